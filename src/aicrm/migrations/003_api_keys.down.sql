-- step: drop the api_keys table (every key stops working)
DROP TABLE api_keys;
