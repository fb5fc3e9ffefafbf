// Node `ws` peer of heartwire's benchmarks: node ws_server.js PORT
// /echo sends every message back; /broadcast sends it to every other /broadcast client.
// Pings every client each PING_INTERVAL_MS (default 1000) and drops one silent for
// longer than PING_INTERVAL_MS + PING_TIMEOUT_MS (default 1000): the heartbeat pattern
// of the ws README, with a timeout. PER_MESSAGE_DEFLATE=1 turns on ws's permessage-deflate
// with its defaults (context takeover both ways, messages under 1 KiB sent uncompressed).
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 9001);
const interval = Number(process.env.PING_INTERVAL_MS || 1000);
const timeout = Number(process.env.PING_TIMEOUT_MS || 1000);
const perMessageDeflate = process.env.PER_MESSAGE_DEFLATE === '1';
const server = new WebSocketServer({ host: '127.0.0.1', port, backlog: 4096, perMessageDeflate });
const broadcast = new Set();

server.on('connection', (socket, request) => {
  socket.seen = Date.now();
  socket.on('pong', () => { socket.seen = Date.now(); });
  if (request.url === '/broadcast') {
    broadcast.add(socket);
    socket.on('close', () => broadcast.delete(socket));
    socket.on('message', (data, isBinary) => {
      socket.seen = Date.now();
      for (const other of broadcast) {
        if (other !== socket) other.send(data, { binary: isBinary });
      }
    });
  } else {
    socket.on('message', (data, isBinary) => {
      socket.seen = Date.now();
      socket.send(data, { binary: isBinary });
    });
  }
});

setInterval(() => {
  for (const socket of server.clients) {
    if (Date.now() - socket.seen > interval + timeout) { socket.terminate(); continue; }
    socket.ping();
  }
}, interval);
