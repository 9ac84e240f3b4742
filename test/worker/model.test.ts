import { describe, expect, it } from 'vitest';
import { SentimentModel } from '../../worker/src/model.js';

describe('SentimentModel', () => {
  const model = new SentimentModel();

  it('is named after the installed vader-sentiment version', () => {
    expect(model.name).toMatch(/^vader-sentiment@\d+\.\d+\.\d+$/);
  });

  it('labels a clearly positive sentence positive', () => {
    const { label, scores } = model.predict('I love this product, it is absolutely wonderful!');
    expect(label).toBe('positive');
    expect(scores.compound).toBeGreaterThanOrEqual(0.05);
    expect(scores.pos).toBeGreaterThan(scores.neg);
  });

  it('labels a clearly negative sentence negative', () => {
    const { label, scores } = model.predict('This is terrible, I hate it and it broke after one day.');
    expect(label).toBe('negative');
    expect(scores.compound).toBeLessThanOrEqual(-0.05);
  });

  it('labels text without sentiment neutral', () => {
    expect(model.predict('The meeting is at three.').label).toBe('neutral');
  });

  it('returns exactly the four VADER scores', () => {
    const { scores } = model.predict('good');
    expect(Object.keys(scores).sort()).toEqual(['compound', 'neg', 'neu', 'pos']);
    expect(scores.pos + scores.neu + scores.neg).toBeCloseTo(1, 2);
  });
});
