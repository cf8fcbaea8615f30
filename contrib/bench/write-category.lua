-- wrk script: stream.write to 100 streams of one category (bench-write.sh),
-- the case where every write needs the same advisory lock.
local counter = 0
local token = os.getenv("EVENTODB_TOKEN")
request = function()
   counter = counter + 1
   local body = string.format(
      '["stream.write","onecat-%d",{"type":"Benched","data":{"n":%d,"text":"hello world"}}]',
      counter % 100, counter)
   return wrk.format("POST", "/rpc", {["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
   if status ~= 200 then
      io.stderr:write("status " .. status .. ": " .. body .. "\n")
   end
end
