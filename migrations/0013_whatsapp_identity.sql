-- 0013: one WhatsApp user, one contact, whatever identifiers Meta sends over time. A user is
-- named by a phone number, a business-scoped user id (BSUID), or both, and either can change:
-- a new number (`user_changed_number`), a new BSUID (`user_changed_user_id`, or a new number,
-- which brings a new BSUID). The contact keeps its current ids in whatsapp_contacts; the ids it
-- was known by before are kept here, so a late webhook from an old BSUID, or a reply queued to
-- an old id, still reaches the same contact and account. The username is shown, never matched
-- on: the user may change it at any time and Meta always sends a BSUID beside it.

ALTER TABLE whatsapp_contacts ADD COLUMN username text;

CREATE TABLE whatsapp_contact_former_ids (
  -- A phone number or a BSUID the contact used before; never the current one of any contact.
  former_id text PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('phone', 'bsuid')),
  contact_id bigint NOT NULL REFERENCES whatsapp_contacts (id),
  replaced_at timestamptz NOT NULL
);

CREATE INDEX whatsapp_contact_former_ids_contact_idx ON whatsapp_contact_former_ids (contact_id);
