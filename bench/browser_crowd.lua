-- wrk script: the same Chrome navigation headers as browser.lua, but from a crowd of 5,000 clients
-- (X-Forwarded-For, trusted by the benchmark's policy) visiting product pages in random order.
local base = {
  ["sec-ch-ua"] = '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"',
  ["sec-ch-ua-mobile"] = "?0",
  ["sec-ch-ua-platform"] = '"Windows"',
  ["upgrade-insecure-requests"] = "1",
  ["user-agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
  ["accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8",
  ["sec-fetch-site"] = "same-origin",
  ["sec-fetch-mode"] = "navigate",
  ["sec-fetch-user"] = "?1",
  ["sec-fetch-dest"] = "document",
  ["accept-encoding"] = "gzip, deflate, br",
  ["accept-language"] = "en-GB,en;q=0.9",
}
math.randomseed(7)
request = function()
  local client = math.random(0, 4999)
  base["x-forwarded-for"] = string.format("198.18.%d.%d", math.floor(client / 250), client % 250 + 1)
  base["cookie"] = "shop_session=c" .. client
  return wrk.format("GET", "/product/" .. math.random(1, 1000), base)
end
