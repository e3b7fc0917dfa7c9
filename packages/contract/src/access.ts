/**
 * Who may do what. The API enforces it, the dashboard hides what a role cannot use, and refusals name the
 * role that could: one policy, read by all three.
 *
 * Roles: viewer (reads), operator (starts runs, labels), approver (decides gates), admin (all, and users).
 * Operators and approvers may also use a serving model from the dashboard's playground and rate its answers
 * (`use`): an approver should be able to try a model before deciding on the next one.
 * Nobody approves the deployment of a run they started (the API checks that against the run, not here).
 */
export const ROLES = ['viewer', 'operator', 'approver', 'admin'] as const;
export type Role = (typeof ROLES)[number];
export const ACTIONS = ['read', 'start', 'label', 'approve', 'use', 'admin'] as const;
export type Action = (typeof ACTIONS)[number];

/** The roles other than admin that may take each action (admin may take every one). */
const ALLOWED: Record<Action, readonly Role[]> = {
  read: ROLES,
  start: ['operator'],
  label: ['operator'],
  approve: ['approver'],
  use: ['operator', 'approver'],
  admin: [],
};

export function can(role: Role, action: Action): boolean {
  return role === 'admin' || ALLOWED[action].includes(role);
}

/** Who may take an action, for refusals: "an operator", "an approver", "an admin". */
export function whoMay(action: Action): string {
  const role = ALLOWED[action][0] ?? 'admin';
  return `${/^[aeiou]/.test(role) ? 'an' : 'a'} ${role}`;
}
