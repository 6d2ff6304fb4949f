-- wrk script: browser-like requests (desktop Chrome navigation headers) over several product pages.
local headers = {
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
  ["cookie"] = "shop_session=benchmark",
}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/product/" .. ((n % 500) + 1), headers)
end
