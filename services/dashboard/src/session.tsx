/**
 * Who is signed in. The session is an HttpOnly cookie the page cannot read, so `GET /api/me` is the truth:
 * 401 shows the login page, and any later 401 (the session expired) comes back here.
 */
import { ROLES, can, type Action, type Me } from '@tempered/api-contract';
import { createContext, useContext } from 'react';

export const MeContext = createContext<Me | null>(null);

export function useMe(): Me {
  const me = useContext(MeContext);
  if (!me) throw new Error('useMe outside a signed-in page');
  return me;
}

const ACTION_WORDS: Record<Action, string> = {
  read: 'view this',
  start: 'start or cancel runs',
  label: 'label preference pairs',
  approve: 'decide deployment gates',
  use: 'chat with serving models and rate their answers',
  admin: 'manage users',
};

/**
 * Why `me` may not do `action`, naming the roles that may; undefined when they may. `doing` names the thing
 * in the page's words when it is not the action's usual one (managing schedules needs `start`).
 */
export function whyNot(me: Me, action: Action, doing: string = ACTION_WORDS[action]): string | undefined {
  if (me.can[action]) return undefined;
  const who = ROLES.filter((r) => r !== 'admin' && can(r, action));
  const roles = [...who, 'admin'].map((r) => `an ${r}`.replace(/^an ([^aeiou])/, 'a $1'));
  return `Your role (${me.role}) cannot ${doing}; ${roles.join(' or ')} can.`;
}
