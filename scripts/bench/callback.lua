-- wrk script: POSTs status callbacks, each with a conversation_uuid never used before, so
-- every request is a durable insert (no duplicates).
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  run = tostring(os.time())
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"agent_id":"60c09d70e6a68858f4220848","to":"972542233016","conversation_uuid":"CON-%s-%d-%d","status":"busy","timestamp":"2022-05-31T06:40:45.475Z"}',
    run, thread_id, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
