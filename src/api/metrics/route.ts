import type { FastifyInstance } from 'fastify';
import type { ApiContext } from '../shared/context.js';

export function registerMetricsRoute(app: FastifyInstance, ctx: ApiContext): void {
  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await ctx.metrics.render();
    return reply.type(contentType).send(body);
  });
}
