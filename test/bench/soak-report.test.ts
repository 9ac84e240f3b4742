import { describe, expect, it } from 'vitest';
import { notModelAnswers } from '../../bench/src/soak-report.js';

describe('the soak’s lost requests', () => {
  it('counts every request without the model’s answer: any status but a 2xx, the orchestrator’s 502, 503 and 504 included, and no answer', () => {
    // 12 sent: 6 model answers, 4 error answers, 2 without an answer.
    expect(notModelAnswers({ requests: 12, statusCodes: { '200': 6, '500': 1, '502': 1, '503': 1, '504': 1 } })).toBe(6);
    expect(notModelAnswers({ requests: 5, statusCodes: { '200': 5 } })).toBe(0);
  });
});
