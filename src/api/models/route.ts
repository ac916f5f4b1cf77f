/** GET /v1/models and /v1/models/:model: the one served model, OpenAI's list shape plus vLLM's max_model_len. */
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import type { ApiContext } from '../shared/context.js';

export function registerModelsRoutes(app: FastifyInstance, ctx: ApiContext, createdAt: number): void {
  const card = () => ({
    id: ctx.modelId,
    object: 'model' as const,
    created: createdAt,
    owned_by: 'zamba2-serve',
    root: ctx.config.model,
    parent: null,
    max_model_len: ctx.maxModelLen,
  });
  app.get('/v1/models', async () => ({ object: 'list', data: [card()] }));
  app.get<{ Params: { model: string } }>('/v1/models/*', async (request) => {
    const id = (request.params as Record<string, string>)['*'] ?? '';
    if (decodeURIComponent(id) !== ctx.modelId) throw new ApiError('ZMB_ERR_MODEL_NOT_FOUND', `The model \`${id}\` does not exist.`, 'model');
    return card();
  });
}
