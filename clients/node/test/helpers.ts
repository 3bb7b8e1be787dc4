// Shared by the tests: a server on 127.0.0.1:0 and typed clients for it.

import * as grpc from '@grpc/grpc-js';

import type { HealthClient } from '../gen/grpc/health/v1/Health';
import type { _grpc_health_v1_HealthCheckResponse_ServingStatus__Output as ServingStatus } from '../gen/grpc/health/v1/HealthCheckResponse';
import type { Action } from '../gen/platica/flows/v1/Action';
import type { ExchangeRequest } from '../gen/platica/flows/v1/ExchangeRequest';
import type { FlowHandlerClient } from '../gen/platica/flows/v1/FlowHandler';
import { loadProtos } from '../src/protos';
import { type RunningServer, type ServerOptions, startServer } from '../src/server';
import { type Json, type JsonObject, fromStruct, toStruct } from '../src/struct';

export const protos = loadProtos();

export const PRODUCTS = [
  { id: 'p1', title: 'Plan Básico' },
  { id: 'p2', title: 'Plan Premium' },
];
export const WELCOME = { screen: 'WELCOME', data: { products: PRODUCTS } };

export function welcomeWith(error: string) {
  return { screen: 'WELCOME', data: { products: PRODUCTS, error_message: error } };
}

export function payment(productId: string, title: string, amount: number) {
  return {
    screen: 'PAYMENT',
    data: { product_id: productId, product_title: title, amount_mxn: amount },
  };
}

const ACTION_NAMES: Record<string, string> = {
  ACTION_INIT: 'init',
  ACTION_DATA_EXCHANGE: 'data_exchange',
  ACTION_BACK: 'back',
  ACTION_UNSPECIFIED: 'navigate',
};

/** An ExchangeRequest for one step, as the bridge sends it. */
export function step(
  action: Action & string,
  screen?: string,
  payload: JsonObject = {},
): ExchangeRequest {
  return {
    id: 'd7c1f3a0-0000-4000-8000-000000000001',
    event: 'EVENT_SCREEN_ADVANCE',
    event_name: 'whatsapp.flows.screen_advance',
    flow_exchange: {
      action,
      action_name: ACTION_NAMES[action] ?? 'unknown',
      ...(screen === undefined ? {} : { screen }),
      payload: toStruct(payload),
    },
  };
}

/** A started server plus clients connected to it over 127.0.0.1. */
export class Harness {
  readonly flows: FlowHandlerClient;
  readonly health: HealthClient;

  private constructor(readonly running: RunningServer) {
    const target = `127.0.0.1:${running.port}`;
    const credentials = grpc.credentials.createInsecure();
    this.flows = new protos.platica.flows.v1.FlowHandler(target, credentials);
    this.health = new protos.grpc.health.v1.Health(target, credentials);
  }

  static async start(options: ServerOptions = {}): Promise<Harness> {
    return new Harness(await startServer({ host: '127.0.0.1', port: 0, ...options }));
  }

  get target(): string {
    return `127.0.0.1:${this.running.port}`;
  }

  /**
   * Calls Exchange; resolves to the reply as `{screen, data}` JSON (what the
   * bridge sends on). `timeoutMs` null: no deadline at all.
   */
  exchange(
    request: ExchangeRequest,
    timeoutMs: number | null = 5000,
  ): Promise<{ screen?: string; data?: Json }> {
    const options: grpc.CallOptions =
      timeoutMs === null ? {} : { deadline: Date.now() + timeoutMs };
    return new Promise((resolve, reject) => {
      this.flows.Exchange(request, options, (error, reply) => {
        if (error || reply === undefined) return reject(error ?? new Error('no reply'));
        const json: { screen?: string; data?: Json } = {};
        if (reply.screen !== undefined) json.screen = reply.screen;
        if (reply.data !== undefined) json.data = fromStruct(reply.data);
        resolve(json);
      });
    });
  }

  /** Calls Exchange expecting an error; resolves to it. */
  async exchangeError(request: ExchangeRequest, timeoutMs = 5000): Promise<grpc.ServiceError> {
    try {
      const reply = await this.exchange(request, timeoutMs);
      throw new Error(`expected an error, got ${JSON.stringify(reply)}`);
    } catch (error) {
      if (isServiceError(error)) return error;
      throw error;
    }
  }

  check(service: string): Promise<ServingStatus | undefined> {
    return new Promise((resolve, reject) => {
      this.health.Check({ service }, { deadline: Date.now() + 5000 }, (error, reply) =>
        error ? reject(error) : resolve(reply?.status),
      );
    });
  }

  async close(): Promise<void> {
    this.flows.close();
    this.health.close();
    await this.running.stop(0);
  }
}

export function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number';
}
