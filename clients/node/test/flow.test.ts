// The quote flow, over a real gRPC connection on 127.0.0.1.

import * as assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import {
  ERROR_EMAIL,
  ERROR_POSTAL_CODE,
  ERROR_PRODUCT,
  validEmail,
  validPostalCode,
} from '../src/quote';
import type { JsonObject } from '../src/struct';
import { Harness, WELCOME, payment, step, welcomeWith } from './helpers';

describe('the quote flow over gRPC', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    await h.close();
  });

  test('init lists the products', async () => {
    assert.deepEqual(await h.exchange(step('ACTION_INIT')), WELCOME);
  });

  test('init ignores its payload', async () => {
    assert.deepEqual(
      await h.exchange(step('ACTION_INIT', undefined, { selected_product: 'p1' })),
      WELCOME,
    );
  });

  for (const screen of ['PAYMENT', 'WELCOME', undefined]) {
    test(`back from ${screen ?? 'no screen'} restores WELCOME`, async () => {
      assert.deepEqual(await h.exchange(step('ACTION_BACK', screen)), WELCOME);
    });
  }

  const valid: [JsonObject, object][] = [
    [{ selected_product: 'p1' }, payment('p1', 'Plan Básico', 199)],
    [{ selected_product: 'p2' }, payment('p2', 'Plan Premium', 499)],
    [{ selected_product: 'p2', email: 'juan@empresa.com' }, payment('p2', 'Plan Premium', 499)],
    [{ selected_product: 'p1', postal_code: '06600' }, payment('p1', 'Plan Básico', 199)],
    [
      { selected_product: 'p1', email: 'a@b.c', postal_code: '00000', extra: 1 },
      payment('p1', 'Plan Básico', 199),
    ],
    // not strings: ignored, as if absent
    [{ selected_product: 'p2', email: 5, postal_code: 6600 }, payment('p2', 'Plan Premium', 499)],
    [
      { selected_product: 'p2', email: null, postal_code: ['0'] },
      payment('p2', 'Plan Premium', 499),
    ],
  ];
  for (const [payload, expected] of valid) {
    test(`WELCOME with ${JSON.stringify(payload)} goes to PAYMENT`, async () => {
      assert.deepEqual(
        await h.exchange(step('ACTION_DATA_EXCHANGE', 'WELCOME', payload)),
        expected,
      );
    });
  }

  test('amounts are whole numbers (sent as doubles the bridge renders as 499)', async () => {
    const reply = await h.exchange(
      step('ACTION_DATA_EXCHANGE', 'WELCOME', { selected_product: 'p2' }),
    );
    const amount = (reply.data as JsonObject)['amount_mxn'];
    assert.equal(amount, 499);
    assert.ok(Number.isInteger(amount));
  });

  const invalid: [JsonObject, string][] = [
    [{}, ERROR_PRODUCT],
    [{ selected_product: 'p9' }, ERROR_PRODUCT],
    [{ selected_product: '' }, ERROR_PRODUCT],
    [{ selected_product: 'P1' }, ERROR_PRODUCT], // case-sensitive
    [{ selected_product: ' p1' }, ERROR_PRODUCT],
    [{ selected_product: 1 }, ERROR_PRODUCT], // not a string
    [{ selected_product: null }, ERROR_PRODUCT],
    [{ selected_product: true }, ERROR_PRODUCT],
    // product first, then email, then postal code
    [{ selected_product: 'p9', email: 'juan@' }, ERROR_PRODUCT],
    [{ selected_product: 'p1', email: 'juan@' }, ERROR_EMAIL],
    [{ selected_product: 'p1', email: 'juan empresa.com' }, ERROR_EMAIL],
    [{ selected_product: 'p1', email: 'juan\u00a0perez@empresa.com' }, ERROR_EMAIL],
    [{ selected_product: 'p1', email: 'juan@', postal_code: '1' }, ERROR_EMAIL],
    [{ selected_product: 'p1', postal_code: '0600' }, ERROR_POSTAL_CODE],
    [{ selected_product: 'p1', postal_code: '06G00' }, ERROR_POSTAL_CODE],
    [{ selected_product: 'p1', postal_code: '\uff10\uff16\uff16\uff10\uff10' }, ERROR_POSTAL_CODE],
  ];
  for (const [payload, error] of invalid) {
    test(`WELCOME with ${JSON.stringify(payload)} stays with "${error}"`, async () => {
      assert.deepEqual(
        await h.exchange(step('ACTION_DATA_EXCHANGE', 'WELCOME', payload)),
        welcomeWith(error),
      );
    });
  }

  test('PAYMENT confirms, whatever the payload', async () => {
    assert.deepEqual(await h.exchange(step('ACTION_DATA_EXCHANGE', 'PAYMENT', { anything: 'x' })), {
      screen: 'SUCCESS',
      data: { acknowledged: true },
    });
  });

  const noStep = {
    'an unknown screen': step('ACTION_DATA_EXCHANGE', 'SUCCESS'),
    'no screen': step('ACTION_DATA_EXCHANGE'),
    'a lowercase screen': step('ACTION_DATA_EXCHANGE', 'welcome'),
    'an empty screen': step('ACTION_DATA_EXCHANGE', ''),
    'an unknown action': step('ACTION_UNSPECIFIED', 'WELCOME', { selected_product: 'p1' }),
    'no flow_exchange': { id: 'no-exchange' },
  };
  for (const [name, request] of Object.entries(noStep)) {
    test(`${name} is INVALID_ARGUMENT`, async () => {
      const error = await h.exchangeError(request);
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    });
  }

  test('answers without a deadline', async () => {
    assert.deepEqual(await h.exchange(step('ACTION_INIT'), null), WELCOME);
  });
});

describe('the validators, exactly as the reference', () => {
  for (const email of [
    'juan@empresa.com',
    'a@b.c',
    'a.b+c@sub.example.mx',
    'a@b@c.com',
    'ñ@dominio.mx',
  ]) {
    test(`valid email ${JSON.stringify(email)}`, () => assert.ok(validEmail(email)));
  }

  const invalidEmails = [
    '',
    'juan',
    'juan@',
    '@empresa.com',
    'juan@empresa',
    'juan@empresa.',
    'juan@.com',
    'juan@empresa..com',
    'juan @empresa.com',
    'juan@empresa.com ',
    'juan\t@empresa.com',
    'juan\u00a0@empresa.com', // no-break space is White_Space
    'juan\u0085@empresa.com', // NEL is White_Space (JavaScript's \s says no)
    'juan\u2007@empresa.com',
    'juan\u3000@empresa.com',
    'juan\u2028@empresa.com',
  ];
  for (const email of invalidEmails) {
    test(`invalid email ${JSON.stringify(email)}`, () => assert.ok(!validEmail(email)));
  }

  test("U+FEFF and U+200B are not White_Space (JavaScript's \\s has U+FEFF)", () => {
    assert.ok(validEmail('juan\ufeff@empresa.com'));
    assert.ok(validEmail('juan\u200b@empresa.com'));
    assert.ok(validEmail('juan\u001f@empresa.com'));
  });

  for (const code of ['06600', '00000', '99999']) {
    test(`valid postal code ${code}`, () => assert.ok(validPostalCode(code)));
  }
  for (const code of [
    '',
    '0660',
    '066000',
    '06G00',
    ' 6600',
    '06600\n',
    '\uff10\uff16\uff16\uff10\uff10',
    '\u0660\u0666\u0666\u0660\u0660',
  ]) {
    test(`invalid postal code ${JSON.stringify(code)}`, () => assert.ok(!validPostalCode(code)));
  }
});
