-- wrk script: sys.version, the cheapest authenticated RPC (the envelope, the
-- token check and the reply, no database).
local token = os.getenv("EVENTODB_TOKEN")
local body = '["sys.version"]'
request = function()
   return wrk.format("POST", "/rpc", {["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
   if status ~= 200 then
      io.stderr:write("status " .. status .. ": " .. body .. "\n")
   end
end
