-- wrk script: stream.get of a 10-message stream (filled by bench.sh).
local token = os.getenv("EVENTODB_TOKEN")
local body = '["stream.get","benchread-1",{"batchSize":10}]'
request = function()
   return wrk.format("POST", "/rpc", {["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
   if status ~= 200 then
      io.stderr:write("status " .. status .. ": " .. body .. "\n")
   end
end
