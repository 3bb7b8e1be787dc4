// The quote flow: the same in every language under clients/, and in the
// bridge's built-in reference (bridge/src/quote.rs). Pinned by the shared
// vectors in tests/vectors/.
//
// - ACTION_INIT or ACTION_BACK, on any screen: WELCOME with the products.
// - ACTION_DATA_EXCHANGE on WELCOME: `selected_product` must be a known
//   product, then `email` and `postal_code` (each only when it is a string)
//   must be valid, checked in that order; the first failure answers WELCOME
//   with the products and `error_message`. Otherwise PAYMENT with the amount.
// - ACTION_DATA_EXCHANGE on PAYMENT: SUCCESS with `acknowledged`.
// - Anything else: InvalidStep (the server answers INVALID_ARGUMENT and the
//   bridge its fallback reply).

import { Action } from '../gen/platica/flows/v1/Action';
import type { ExchangeRequest__Output } from '../gen/platica/flows/v1/ExchangeRequest';
import type { ExchangeResponse } from '../gen/platica/flows/v1/ExchangeResponse';
import { type JsonObject, stringField, toStruct } from './struct';

export interface Product {
  readonly id: string;
  readonly title: string;
  readonly amountMxn: number;
}

export const PRODUCTS: readonly Product[] = [
  { id: 'p1', title: 'Plan Básico', amountMxn: 199 },
  { id: 'p2', title: 'Plan Premium', amountMxn: 499 },
];

export const ERROR_PRODUCT = 'Selecciona un producto válido';
export const ERROR_EMAIL = 'El correo electrónico no es válido';
export const ERROR_POSTAL_CODE = 'El código postal no es válido';

/** The quote flow has no step for this request. */
export class InvalidStep extends Error {
  override readonly name = 'InvalidStep';
}

// Unicode White_Space, the property Rust's char::is_whitespace (the reference)
// tests: U+00A0 and U+0085 count, U+FEFF does not. JavaScript's \s differs on
// exactly those (it has U+FEFF and lacks U+0085), hence the property escape.
const WHITE_SPACE = /\p{White_Space}/u;
const POSTAL_CODE = /^[0-9]{5}$/;

/** `local@domain.tld`, no whitespace: enough to catch typos, as a form would. */
export function validEmail(email: string): boolean {
  const at = email.indexOf('@');
  if (at < 0) return false;
  const local = email.slice(0, at);
  const parts = email.slice(at + 1).split('.');
  return (
    local.length > 0 &&
    !WHITE_SPACE.test(email) &&
    parts.length >= 2 &&
    parts.every((part) => part.length > 0)
  );
}

/** Mexican postal codes: exactly five ASCII digits. */
export function validPostalCode(code: string): boolean {
  return POSTAL_CODE.test(code);
}

function reply(screen: string, data: JsonObject): ExchangeResponse {
  return { screen, data: toStruct(data) };
}

function welcome(error?: string): ExchangeResponse {
  const data: JsonObject = { products: PRODUCTS.map(({ id, title }) => ({ id, title })) };
  if (error !== undefined) data['error_message'] = error;
  return reply('WELCOME', data);
}

/** The quote flow's reply to one step; throws InvalidStep when it has none. */
export function answer(request: ExchangeRequest__Output): ExchangeResponse {
  const exchange = request.flow_exchange;
  if (exchange === undefined) throw new InvalidStep('flow_exchange is missing');
  // proto3 leaves the default (ACTION_UNSPECIFIED) off the wire.
  const action = exchange.action ?? Action.ACTION_UNSPECIFIED;
  const screen = exchange.screen;
  const text = (key: string) => stringField(exchange.payload, key);

  if (action === Action.ACTION_INIT || action === Action.ACTION_BACK) return welcome();
  if (action === Action.ACTION_DATA_EXCHANGE && screen === 'WELCOME') {
    const selected = text('selected_product');
    const product = PRODUCTS.find((p) => p.id === selected);
    if (product === undefined) return welcome(ERROR_PRODUCT);
    const email = text('email');
    if (email !== undefined && !validEmail(email)) return welcome(ERROR_EMAIL);
    const postalCode = text('postal_code');
    if (postalCode !== undefined && !validPostalCode(postalCode)) {
      return welcome(ERROR_POSTAL_CODE);
    }
    return reply('PAYMENT', {
      product_id: product.id,
      product_title: product.title,
      amount_mxn: product.amountMxn,
    });
  }
  if (action === Action.ACTION_DATA_EXCHANGE && screen === 'PAYMENT') {
    return reply('SUCCESS', { acknowledged: true });
  }
  throw new InvalidStep(
    `the quote flow has no step for action ${action} on screen ${screen ?? '(none)'}`,
  );
}
