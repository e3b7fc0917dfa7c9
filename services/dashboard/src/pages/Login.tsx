/** Sign in with a username and password; the API answers with a session cookie. */
import { loginRequest, type LoginResponse, type Me } from '@tempered/api-contract';
import { useMutation } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api } from '../api';

export function LoginPage({ onSignedIn, notice }: { onSignedIn: (me: Me) => void; notice?: string }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [invalid, setInvalid] = useState(false);
  const login = useMutation({
    mutationFn: (body: { username: string; password: string }) => api<LoginResponse>('/api/login', { method: 'POST', body, quiet401: true }),
    onSuccess: (res) => onSignedIn(res.user),
    onError: () => setPassword(''),
  });
  const failure = login.error;
  const error = invalid
    ? 'Enter your username and password.'
    : !failure
      ? undefined
      : failure.status === 401 || failure.status === 403
        ? 'Wrong username or password.'
        : failure.status === 429
          ? failure.message || 'Too many attempts; wait a minute and try again.'
          : failure.message;
  const busy = login.isPending;

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const body = loginRequest.safeParse({ username: username.trim(), password });
    setInvalid(!body.success);
    if (body.success) login.mutate(body.data);
    else login.reset();
  };

  return (
    <main className="login">
      <form className="card login-card" onSubmit={submit} aria-labelledby="login-title" noValidate>
        <div className="brand big" aria-hidden="true">
          <span className="logo">T</span> Tempered
        </div>
        <h1 id="login-title">Sign in</h1>
        {notice && <p className="callout info">{notice}</p>}
        <label htmlFor="username">Username</label>
        <input id="username" name="username" autoComplete="username" autoFocus value={username} onChange={(e) => setUsername(e.target.value)} />
        <label htmlFor="password">Password</label>
        <input id="password" name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} />
        {error && (
          <p className="callout error" role="alert" data-testid="login-error">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <p className="muted small">The local stack's users and passwords are in credentials.json in its data directory.</p>
      </form>
    </main>
  );
}
