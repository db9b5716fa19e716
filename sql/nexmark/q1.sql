-- Nexmark q1: currency conversion.
SELECT count(*) AS bids, round(sum(price_eur), 2) AS total_eur FROM (
  SELECT auction, bidder, 0.908 * price AS price_eur, "dateTime", extra FROM bid
);
