-- The first password sealed for a tenant wins (a crash between sealing and the role keeps it).
UPDATE pgfleet.tenants SET password_sealed = $2, password_key = $3, key_id = $4
WHERE id = $1 AND password_sealed IS NULL
