-- Nexmark q2: selection.
SELECT auction, price FROM bid WHERE auction % 123 = 0 ORDER BY auction, price LIMIT 20;
