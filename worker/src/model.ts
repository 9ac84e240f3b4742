import { SentimentIntensityAnalyzer, type PolarityScores } from 'vader-sentiment';
// Imported rather than required at run time, so a bundle (the worker image) carries the version too.
import vaderPackage from 'vader-sentiment/package.json' with { type: 'json' };

/** Sentiment class derived from the compound score. */
export type SentimentLabel = 'positive' | 'negative' | 'neutral';

/** One prediction: the label and VADER's raw scores. */
export interface Prediction {
  label: SentimentLabel;
  scores: PolarityScores;
}

/** VADER's recommended cut-offs on the compound score (from the VADER paper and README). */
const POSITIVE_MIN = 0.05;
const NEGATIVE_MAX = -0.05;

/** The VADER sentiment model, a lexicon and rules: no weights to load, synchronous and sub-millisecond. */
export class SentimentModel {
  /** `vader-sentiment@<installed version>`, from the package's package.json. */
  readonly name = `vader-sentiment@${vaderPackage.version}`;

  /** Classify `text`: compound >= 0.05 positive, <= -0.05 negative, otherwise neutral. */
  predict(text: string): Prediction {
    const { pos, neu, neg, compound } = SentimentIntensityAnalyzer.polarity_scores(text);
    const label: SentimentLabel = compound >= POSITIVE_MIN ? 'positive' : compound <= NEGATIVE_MAX ? 'negative' : 'neutral';
    return { label, scores: { pos, neu, neg, compound } };
  }
}
