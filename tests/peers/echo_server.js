// An echo server on Node `ws`, for the client's interoperability tests.
//
// Listens on 127.0.0.1 on a free port, prints the port on one line, then echoes every
// message. `ws` answers the client's Pings itself.
'use strict';

const { WebSocketServer } = require('ws');

const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
server.on('listening', () => {
  process.stdout.write(`${server.address().port}\n`);
});
server.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
});
