-- wrk script for bench/peer/run.sh (GENERATOR=wrk): each wrk thread sends its own file of
-- pre-built, signed and encrypted WeChat messages (`bench/webhook.rs --dump PREFIX --split K`),
-- so that every request of a run is a distinct message. A thread that runs out of messages starts
-- its file again and says so at the end (the server would then answer from its de-duplication
-- record: such a run does not count).
--
--   WRK_REQUESTS=PREFIX wrk -t K -c C -d 6s --latency -s bench/peer/wrk.lua http://127.0.0.1:PORT

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  reqs = {}
  local headers = { ["Content-Type"] = "text/xml" }
  for line in io.lines(os.getenv("WRK_REQUESTS") .. "." .. id) do
    local tab = line:find("\t", 1, true)
    reqs[#reqs + 1] = wrk.format("POST", line:sub(1, tab - 1), headers, line:sub(tab + 1))
  end
  i = 0
  wrapped = 0
end

function request()
  i = i + 1
  if i > #reqs then
    i = 1
    wrapped = wrapped + 1
  end
  return reqs[i]
end

function done(summary, latency, requests)
  local wraps = 0
  for _, t in ipairs(threads) do
    wraps = wraps + (t:get("wrapped") or 0)
  end
  io.write(string.format("wrk-summary requests=%d errors=%d non2xx=%d wrapped=%d p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, wraps, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
