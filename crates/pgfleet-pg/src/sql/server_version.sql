-- The server's version number, e.g. 180006.
SELECT pg_catalog.current_setting('server_version_num')::int4 AS server_version_num;
