-- wrk script: POSTs status callbacks shaped as AI Studio sends them. Each conversation is
-- new, except every tenth request, which repeats the one before it exactly (a redelivery):
-- 10% duplicates, some of them in flight at the same time as their original. Statuses
-- cycle through the five failure statuses and agents through three.
local statuses = {"busy", "timeout", "rejected", "cancelled", "failed"}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
end

function init(args)
  counter = 0
  run = os.getenv("BENCH_RUN") or tostring(os.time())
end

function request()
  counter = counter + 1
  local n = counter
  if n % 10 == 0 then n = n - 1 end
  local body = string.format(
    '{"agent_id":"agent-%d","to":"97254%07d","conversation_uuid":"CON-%s-%d-%d",' ..
    '"status":"%s","timestamp":"2026-12-01T06:40:45.475Z"}',
    n % 3, n % 10000000, run, thread_id, n, statuses[n % 5 + 1])
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
