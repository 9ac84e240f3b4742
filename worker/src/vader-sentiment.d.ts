/** The package ships no types; this covers the one call the worker makes. */
declare module 'vader-sentiment' {
  /** VADER's proportions (`pos`, `neu`, `neg`, summing to ~1) and normalized `compound` in [-1, 1]. */
  export interface PolarityScores {
    pos: number;
    neu: number;
    neg: number;
    compound: number;
  }

  export const SentimentIntensityAnalyzer: {
    polarity_scores(text: string): PolarityScores;
  };
}
