-- Workflows of new kinds (see the SQLite migration 0090): the kind is written only from the
-- typed `Workflow::kind`, so the column no longer lists the kinds.
ALTER TABLE workflows DROP CONSTRAINT IF EXISTS workflows_kind_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_kind_not_empty CHECK (kind <> '');
