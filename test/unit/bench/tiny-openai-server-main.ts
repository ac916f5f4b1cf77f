// `node --import tsx test/unit/bench/tiny-openai-server-main.ts PORT`: the stand-in server as a
// process, for testing the bench's --baseline-cmd (server-process.test.ts). Runs until killed.
import { startTinyServer } from './tiny-openai-server.js';

const port = Number(process.argv[2]);
await startTinyServer({ port, modelId: 'baseline-model' });
process.stdout.write(`listening on ${port}\n`);
