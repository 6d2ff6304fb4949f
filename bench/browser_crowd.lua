-- wrk script: a crowd of 20,000 shoppers in desktop Chrome 120, each on its own address behind a
-- trusted edge (X-Forwarded-For), 40 to a /24 across 500 networks, with its session cookie. Each
-- shopper fetches an image of the page it is on, then opens a random product page, then another,
-- and so on: two requests in three are pages. A shopper's own requests keep that order, as a
-- browser's do; drawing page or image at random instead would leave a few shoppers with a dozen
-- pages and no image, which the no-assets check rightly flags as no browser's behaviour. The image
-- comes first because every wrk run starts the count again: ending a run on two pages and starting
-- the next on two more gave shoppers four pages in a row at each boundary, and from the fifth run
-- of a benchmark on, 6 % of requests were flagged for it.
-- At the 10,000-17,000 requests/s a protected server answers here, each shopper sends about one
-- request a second: brisk for a person, but not the 2-3 pages a second that 5,000 clients would
-- each have to send, which the burst signal rightly flags as no person's pace.
-- Headers go out in Chrome's own order (raw requests: wrk.format would order them by Lua's hash).
local ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
local hints = 'sec-ch-ua: "Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"\r\n' ..
              "sec-ch-ua-mobile: ?0\r\n"
local page, image

init = function(args)
  local host = "Host: " .. wrk.host .. ":" .. tostring(wrk.port) .. "\r\nConnection: keep-alive\r\n"
  local referer = "Referer: http://" .. wrk.host .. ":" .. tostring(wrk.port) .. "/"
  page = host .. hints .. 'sec-ch-ua-platform: "Windows"\r\n' ..
         "Upgrade-Insecure-Requests: 1\r\nUser-Agent: " .. ua .. "\r\n" ..
         "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8," ..
         "application/signed-exchange;v=b3;q=0.7\r\n" ..
         "Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-User: ?1\r\nSec-Fetch-Dest: document\r\n" ..
         referer .. "\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n"
  image = host .. hints .. "User-Agent: " .. ua .. '\r\nsec-ch-ua-platform: "Windows"\r\n' ..
          "Accept: image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8\r\n" ..
          "Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: image\r\n" ..
          referer .. "product/1\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n"
end

local sent = {}  -- requests each shopper has sent so far

math.randomseed(7)
request = function()
  local client = math.random(0, 19999)
  local n = (sent[client] or 0) + 1
  sent[client] = n
  local id = math.random(1, 1000)
  local tail = "Cookie: shop_session=c" .. client .. "\r\nX-Forwarded-For: 198." .. (18 + math.floor(client % 500 / 256)) .. "." ..
               (client % 500 % 256) .. "." .. (math.floor(client / 500) + 1) .. "\r\n\r\n"
  if n % 3 == 1 then
    return "GET /static/img/" .. id .. ".svg HTTP/1.1\r\n" .. image .. tail
  end
  return "GET /product/" .. id .. " HTTP/1.1\r\n" .. page .. tail
end
