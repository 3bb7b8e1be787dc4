// The FlowHandler service and the gRPC server around it: health
// (grpc.health.v1) and server reflection (v1 and v1alpha).

import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, type ServingStatusMap } from 'grpc-health-check';

import type { ExchangeResponse } from '../gen/platica/flows/v1/ExchangeResponse';
import type { FlowHandlerHandlers } from '../gen/platica/flows/v1/FlowHandler';
import { withLinkedDescriptors } from './descriptors';
import { type Logger, silent } from './log';
import { loadPackageDefinition, loadProtos } from './protos';
import { InvalidStep, answer } from './quote';

export const SERVICE_NAME = 'platica.flows.v1.FlowHandler';

/** The names health answers for: the whole server ("") and the FlowHandler. */
export const HEALTH_SERVICES = ['', SERVICE_NAME] as const;

export interface HandlerOptions {
  /**
   * Simulated work per call in milliseconds (a database, another service),
   * to show how the deadline is honoured; 0 by default.
   */
  workMs?: number;
  logger?: Logger;
}

/** Milliseconds left until a call's deadline; Infinity when it has none. */
export function remainingMs(deadline: grpc.Deadline, now = Date.now()): number {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return at - now;
}

/** A gRPC status to answer with. */
class StatusError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(details);
  }
}

type ExchangeCall = Parameters<FlowHandlerHandlers['Exchange']>[0];

async function exchange(
  call: ExchangeCall,
  delivery: string,
  { workMs = 0, logger = silent }: HandlerOptions,
): Promise<ExchangeResponse> {
  const request = call.request;
  // The bridge discards a reply after the deadline: do not start work that
  // cannot finish in time.
  const remaining = remainingMs(call.getDeadline());
  if (remaining <= workMs) {
    logger.warn(`delivery ${delivery}: ${Math.round(remaining)} ms left, not enough; giving up`);
    throw new StatusError(grpc.status.DEADLINE_EXCEEDED, 'no time left');
  }
  if (workMs > 0) await sleep(workMs);
  if (call.cancelled) {
    // Past the deadline (grpc-js has answered DEADLINE_EXCEEDED) or abandoned.
    throw new StatusError(grpc.status.CANCELLED, 'cancelled');
  }
  let response: ExchangeResponse;
  try {
    response = answer(request);
  } catch (error) {
    if (!(error instanceof InvalidStep)) throw error;
    logger.warn(`delivery ${delivery}: ${error.message}`);
    throw new StatusError(grpc.status.INVALID_ARGUMENT, error.message);
  }
  // Ids and names only: payloads and request.client hold personal data.
  const step = request.flow_exchange;
  logger.info(
    `delivery ${delivery}: ${step?.action_name ?? '-'} on ${step?.screen ?? '-'} -> ${response.screen}`,
  );
  return response;
}

/** The FlowHandler implementation serving the quote flow. */
export function flowHandler(options: HandlerOptions = {}): FlowHandlerHandlers {
  const logger = options.logger ?? silent;
  return {
    Exchange(call, callback) {
      const delivery = call.request.id || '(no id)';
      exchange(call, delivery, options).then(
        (response) => callback(null, response),
        (error: unknown) => {
          if (error instanceof StatusError) {
            callback({ code: error.code, details: error.details });
          } else {
            logger.error(`delivery ${delivery}: ${String(error)}`);
            callback({ code: grpc.status.INTERNAL, details: 'internal error' });
          }
        },
      );
    },
  };
}

export interface ServerOptions extends HandlerOptions {
  host?: string;
  port?: number;
}

/** `host:port`, with IPv6 hosts in brackets. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A started server: `port` is the bound one (useful with port 0). */
export class RunningServer {
  private stopping: Promise<void> | undefined;

  constructor(
    readonly server: grpc.Server,
    readonly health: HealthImplementation,
    readonly host: string,
    readonly port: number,
  ) {}

  get address(): string {
    return formatAddress(this.host, this.port);
  }

  /**
   * Graceful stop: health turns NOT_SERVING, no new calls are accepted, and
   * calls in flight get `graceMs` to finish before the rest are cancelled.
   */
  stop(graceMs = 5000): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => {
      for (const name of HEALTH_SERVICES) this.health.setStatus(name, 'NOT_SERVING');
      const timer = setTimeout(() => this.server.forceShutdown(), graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    return this.stopping;
  }

  /** Cancels every call at once. */
  forceStop(): void {
    this.server.forceShutdown();
  }
}

/** Starts the FlowHandler with health and reflection on host:port (default 127.0.0.1:0). */
export async function startServer({
  host = '127.0.0.1',
  port = 0,
  ...handlerOptions
}: ServerOptions = {}): Promise<RunningServer> {
  const definition = loadPackageDefinition();
  const protos = loadProtos(definition);
  const server = new grpc.Server();
  server.addService(protos.platica.flows.v1.FlowHandler.service, flowHandler(handlerOptions));
  const serving: ServingStatusMap = {};
  for (const name of HEALTH_SERVICES) serving[name] = 'SERVING';
  const health = new HealthImplementation(serving);
  health.addToServer(server);
  // v1 and v1alpha, so that old and new grpcurl both work.
  new ReflectionService(withLinkedDescriptors(definition)).addToServer(server);

  const address = formatAddress(host, port);
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, boundPort) => {
      if (error) reject(new Error(`cannot listen on ${address}: ${error.message}`));
      else resolve(boundPort);
    });
  });
  return new RunningServer(server, health, host, bound);
}
