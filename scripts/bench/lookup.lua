-- wrk script: GET /v1/outcomes/{conversation_uuid} of a random conversation among the
-- 1,000,000 that scripts/bench/queries loads (CON-1 … CON-1000000).
math.randomseed(os.time())

function request()
  return wrk.format("GET", "/v1/outcomes/CON-" .. math.random(1, 1000000))
end
