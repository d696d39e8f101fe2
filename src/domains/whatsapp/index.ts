// The WhatsApp domain's public surface: everything outside src/domains/whatsapp imports from here,
// except the task definitions (*.task.ts), which only src/task-registry.ts reads.
export { createGraphClient } from './graph-api.ts';
export { addressOfAccount } from './identity.ts';
export { type ConversationLine, whatsappMessages } from './reads.ts';
export { enqueueReply } from './replies.ts';
export {
  parseWebhook,
  signWebhook,
  textWebhook,
  verifyHandshake,
  verifyWebhookSignature,
  WEBHOOK_BODY_LIMIT_BYTES,
  WebhookPayloadError,
} from './webhook.ts';
export { WebhookIngestor } from './webhook-ingestor.ts';
