// socket.io peer of heartwire's benchmarks (websocket transport only):
// node socketio_server.js PORT
// event "echo" is sent back to its sender; event "publish" is sent to every other
// client as "message". Engine.IO pings every PING_INTERVAL_MS (default 1000) and drops
// a client that does not answer within PING_TIMEOUT_MS (default 1000).
'use strict';
const { Server } = require('socket.io');

const port = Number(process.argv[2] || 9002);
const interval = Number(process.env.PING_INTERVAL_MS || 1000);
const timeout = Number(process.env.PING_TIMEOUT_MS || 1000);
const io = new Server({
  transports: ['websocket'],
  pingInterval: interval,
  pingTimeout: timeout,
  serveClient: false,
});

io.on('connection', (socket) => {
  socket.on('echo', (data) => socket.emit('echo', data));
  socket.on('publish', (data) => socket.broadcast.emit('message', data));
});

io.listen(port, { host: '127.0.0.1', backlog: 4096 });
