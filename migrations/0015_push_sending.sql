-- Crash precision of pushes: a delivery row `in_flight` is either only *claimed* (leased to a
-- worker, `sending_at` NULL: nothing was sent, so an expired lease gives it back to `pending`) or
-- *sending* (`sending_at` set just before the WeChat call: an expired lease makes it `unknown`).
-- The public state stays `in_flight` for both. Times are unix milliseconds (UTC).
ALTER TABLE push_deliveries ADD COLUMN sending_at BIGINT;
