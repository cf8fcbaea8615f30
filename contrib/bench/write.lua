-- wrk script: stream.write to a spread of streams (one category per thread
-- would serialize on the category lock; spread over 64 categories instead).
local counter = 0
local token = os.getenv("EVENTODB_TOKEN")
request = function()
   counter = counter + 1
   local body = string.format(
      '["stream.write","bench%d-%d",{"type":"Benched","data":{"n":%d,"text":"hello world"}}]',
      counter % 64, counter % 1000, counter)
   return wrk.format("POST", "/rpc", {["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
   if status ~= 200 then
      io.stderr:write("status " .. status .. ": " .. body .. "\n")
   end
end
