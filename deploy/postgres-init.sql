-- One database per service (FZT_DATABASE_URL=.../fzt_{service}).
-- Run by the postgres image on first start only (empty data volume), as POSTGRES_USER,
-- which therefore owns them. On an existing server run it once by hand:
--   psql -U postgres -f deploy/postgres-init.sql
CREATE DATABASE fzt_intake;
CREATE DATABASE fzt_dispatch;
CREATE DATABASE fzt_mediation;
CREATE DATABASE fzt_supervision;
