/** The platform's contract, Temporal-free: see ./pipeline (runs and stages), ./access (roles), ./retrain. */
export * from './access';
export * from './pipeline';
export * from './retrain';
