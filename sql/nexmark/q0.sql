-- Nexmark q0: passthrough.
SELECT count(*) AS bids, sum(price) AS total_price FROM (
  SELECT auction, bidder, price, "dateTime", extra FROM bid
);
