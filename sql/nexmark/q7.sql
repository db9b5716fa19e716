-- Nexmark q7: highest bid — the bids with the highest price in each 10 s tumbling window. A
-- window-aligned join of the bids with their window's maximum: a batch query over setup.sql's
-- views, or the SELECT of a streaming query over setup-stream.sql's (the bids of a window are
-- held until the watermark passes it). Like q5, it also returns the window's end.
SELECT b.auction, b.price, b.bidder, b."dateTime", b.window_end
FROM tumble(bid, "dateTime", INTERVAL '10' SECOND) AS b
JOIN (
  SELECT max(price) AS maxprice, window_start, window_end
  FROM tumble(bid, "dateTime", INTERVAL '10' SECOND)
  GROUP BY window_start, window_end
) AS maxima
ON b.window_end = maxima.window_end AND b.price = maxima.maxprice
