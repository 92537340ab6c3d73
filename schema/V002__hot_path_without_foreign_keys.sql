-- The two foreign keys on the hot path go. Forward-only: once applied, this file is never
-- edited.
--
-- Rondo writes a workflow only for a graph version it has just read (versions are never
-- deleted), and a job only in the statement or transaction that writes its workflow (nothing
-- deletes workflows). The foreign keys checked this again with a query per new workflow and
-- per new job, and every start took a KEY SHARE lock on its graph's row: a write to that row,
-- and a multixact whenever two transactions starting workflows of one graph overlapped.
ALTER TABLE workflows DROP CONSTRAINT workflows_graph_name_graph_version_fkey;
ALTER TABLE jobs DROP CONSTRAINT jobs_workflow_id_fkey;
