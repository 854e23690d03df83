-- wrk script: every request carries a site cookie picked at random from the file named by
-- COOKIES (one cookie value per line), with Host from HOST.
local cookies = {}
for line in io.lines(os.getenv("COOKIES")) do
  cookies[#cookies + 1] = "__Host-gatehouse=" .. line
end
local host = os.getenv("HOST")
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/", { ["Host"] = host, ["Cookie"] = cookies[math.random(#cookies)] })
end
