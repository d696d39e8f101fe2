// A local web server for the scraper to fetch (on 127.0.0.1: the tests that use it set
// SCRAPER_ALLOW_PRIVATE_NETWORKS=true). It records the path of every request.
import { once } from 'node:events';
import { createServer } from 'node:http';

export interface PageAnswer {
  /** 200 unless given. */
  status?: number;
  /** text/html; charset=utf-8 unless given. */
  type?: string;
  body: string | Buffer;
}

export interface PageServer {
  /** http://127.0.0.1:{port}, without a trailing slash. */
  url: string;
  /** The path (and query) of each request, in order. */
  hits: string[];
  close(): Promise<void>;
}

/** Starts a server that answers each request with `answer(path)`. */
export async function startPageServer(answer: (path: string) => PageAnswer): Promise<PageServer> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    const path = req.url ?? '';
    hits.push(path);
    const page = answer(path);
    res.writeHead(page.status ?? 200, { 'content-type': page.type ?? 'text/html; charset=utf-8' });
    res.end(page.body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    // Keep-alive connections (the scraper's client keeps some) would hold close() open: end them.
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
