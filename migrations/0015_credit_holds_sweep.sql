-- 0015: the holds sweep (credits.sweep_holds) reads the holds still held and older than a cutoff,
-- every 15 minutes. Held is a passing state (a hold is settled or released within minutes), so a
-- partial index keeps that read to the few open holds instead of every hold ever made.
CREATE INDEX credit_holds_held_created_at_idx ON credit_holds (created_at) WHERE state = 'held';
