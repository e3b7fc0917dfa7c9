/** The platform's contract, Temporal-free: see ./pipeline (runs and stages), ./access (roles), ./retrain, ./evaluation. */
export * from './access';
export * from './pipeline';
export * from './retrain';
export * from './evaluation';
