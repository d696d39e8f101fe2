// The read-only slice of the WhatsApp surface (index.ts re-exports it): the conversation queries
// the command line runs. It loads only SQL, so `backend whatsapp messages|outbox` does not load the
// Graph API client, the webhook schemas or the tracing that index.ts brings in.
export { type ConversationLine, whatsappMessages } from './whatsapp.repository.ts';
