-- 0006: WhatsApp conversations. A contact is the person behind a WhatsApp user, tied to one
-- account. Meta identifies users by phone number (wa_id) and, since 2026, by a business-scoped
-- user id (BSUID) that may replace the phone number in webhooks; either may be missing, so both
-- are nullable, each unique, and a contact first seen by phone gets its BSUID filled in later.

CREATE TABLE whatsapp_contacts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id bigint NOT NULL UNIQUE REFERENCES accounts (id),
  phone text UNIQUE,
  bsuid text UNIQUE,
  profile_name text,
  -- The last message from this user: the 24-hour customer service window starts there.
  last_inbound_at timestamptz,
  created_at timestamptz NOT NULL,
  CHECK (phone IS NOT NULL OR bsuid IS NOT NULL)
);

-- Every message in and out. Inbound rows are written by the webhook (keyed by wamid, so a
-- redelivered webhook inserts nothing); outbound rows by whatsapp.send_message (keyed by the
-- producer's send_key) and get their wamid from the Graph API's answer.
CREATE TABLE whatsapp_messages (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  direction text NOT NULL CHECK (direction IN ('in', 'out')),
  wamid text UNIQUE,
  send_key text UNIQUE,
  contact_id bigint REFERENCES whatsapp_contacts (id),
  -- Who the message is from (in) or to (out): the phone number, else the BSUID.
  wa_user text NOT NULL,
  phone_number_id text,
  type text NOT NULL,
  body text,
  -- in: received → processed. out: queued → offline | accepted → sent → delivered → read; failed.
  status text NOT NULL CHECK (
    status IN ('received', 'processed', 'queued', 'offline', 'accepted', 'sent', 'delivered', 'read', 'failed')
  ),
  error jsonb,
  -- in: the message object as Meta sent it. out: the request body sent to the Graph API.
  payload jsonb,
  -- in: Meta's timestamp of the message; out: when the Graph API accepted it.
  message_at timestamptz,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  CHECK ((direction = 'in') = (send_key IS NULL))
);

CREATE INDEX whatsapp_messages_contact_idx ON whatsapp_messages (contact_id, id);
CREATE INDEX whatsapp_messages_offline_idx ON whatsapp_messages (id) WHERE status = 'offline';

-- Status webhooks, one row per (wamid, status): they arrive out of order, more than once, and
-- possibly before the send that produced the wamid has stored it. The message's own status is
-- moved forward only (never read → delivered) as statuses arrive and when the send stores its wamid.
CREATE TABLE whatsapp_statuses (
  wamid text NOT NULL,
  status text NOT NULL,
  recipient text,
  status_at timestamptz,
  errors jsonb,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (wamid, status)
);
