// Node `ws` peer of heartwire's benchmarks: node ws_server.js PORT
// /echo sends every message back; /broadcast sends it to every other /broadcast client.
// Pings every client each PING_INTERVAL_MS (default 1000) and drops one that did not
// answer the previous Ping: the heartbeat pattern of the ws README.
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 9001);
const interval = Number(process.env.PING_INTERVAL_MS || 1000);
const server = new WebSocketServer({ host: '127.0.0.1', port, backlog: 4096 });
const broadcast = new Set();

server.on('connection', (socket, request) => {
  socket.alive = true;
  socket.on('pong', () => { socket.alive = true; });
  if (request.url === '/broadcast') {
    broadcast.add(socket);
    socket.on('close', () => broadcast.delete(socket));
    socket.on('message', (data, isBinary) => {
      socket.alive = true;
      for (const other of broadcast) {
        if (other !== socket) other.send(data, { binary: isBinary });
      }
    });
  } else {
    socket.on('message', (data, isBinary) => {
      socket.alive = true;
      socket.send(data, { binary: isBinary });
    });
  }
});

setInterval(() => {
  for (const socket of server.clients) {
    if (!socket.alive) { socket.terminate(); continue; }
    socket.alive = false;
    socket.ping();
  }
}, interval);
