-- Servers added before pgfleet redacted `?password=` in URLs kept that password in clear in their
-- display URL and their `server.added` event: hidden now (the sealed URL keeps the real one).
UPDATE pgfleet.servers
SET display_url = regexp_replace(display_url, '([?&][^=&]*password=)[^&]*', '\1***', 'gi')
WHERE display_url ~* '[?&][^=&]*password=';
UPDATE pgfleet.events
SET detail = jsonb_set(detail, '{url}',
                       to_jsonb(regexp_replace(detail->>'url', '([?&][^=&]*password=)[^&]*', '\1***', 'gi')))
WHERE kind = 'server.added' AND detail->>'url' ~* '[?&][^=&]*password=';
