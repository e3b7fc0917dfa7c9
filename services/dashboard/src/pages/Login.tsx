/** Sign in with a username and password; the API answers with a session cookie. */
import { loginRequest, type LoginResponse, type Me } from '@tempered/api-contract';
import { useState, type FormEvent } from 'react';
import { api, ApiFailure } from '../api';

export function LoginPage({ onSignedIn, notice }: { onSignedIn: (me: Me) => void; notice?: string }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const body = loginRequest.safeParse({ username: username.trim(), password });
    if (!body.success) {
      setError('Enter your username and password.');
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      const res = await api<LoginResponse>('/api/login', { method: 'POST', body: body.data, quiet401: true });
      onSignedIn(res.user);
    } catch (err) {
      if (err instanceof ApiFailure && (err.status === 401 || err.status === 403)) setError('Wrong username or password.');
      else if (err instanceof ApiFailure && err.status === 429) setError(err.message || 'Too many attempts; wait a minute and try again.');
      else setError(err instanceof Error ? err.message : String(err));
      setPassword('');
    } finally {
      setBusy(false);
    }
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
