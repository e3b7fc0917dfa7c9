/**
 * The shell: the query cache every page reads through, who is signed in (or the login page), the header with
 * navigation and the pending-approvals count, and the route table. Routes are real paths; the API serves
 * index.html for all of them.
 */
import type { Me } from '@tempered/api-contract';
import { QueryClientProvider, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { post, setUnauthorizedHandler } from './api';
import { ErrorBox, Loading } from './components/common';
import { LiveProvider, useLive } from './live';
import { ApprovalsPage } from './pages/Approvals';
import { DatasetPage, DatasetsPage } from './pages/Datasets';
import { DeploymentsPage } from './pages/Deployments';
import { LabelingQueuePage, LabelPage } from './pages/Labeling';
import { LoginPage } from './pages/Login';
import { ModelsPage } from './pages/Models';
import { PlaygroundPage } from './pages/Playground';
import { RunPage } from './pages/run/RunPage';
import { RunsPage } from './pages/Runs';
import { SchedulesPage } from './pages/schedules/SchedulesPage';
import { StartRunPage } from './pages/StartRun';
import { createQueryClient, queries } from './queries';
import { Link, navigate, useLocation } from './router';
import { MeContext } from './session';

export function App() {
  const [client] = useState(createQueryClient);
  return (
    <QueryClientProvider client={client}>
      <Session />
    </QueryClientProvider>
  );
}

/** `GET /api/me` decides: the login page (null), a failure to show, or the signed-in app. */
function Session() {
  const client = useQueryClient();
  const me = useQuery(queries.me);
  const [notice, setNotice] = useState<string>();
  const setMe = (value: Me | null) => client.setQueryData(queries.me.queryKey, value);

  useEffect(
    () =>
      setUnauthorizedHandler(() => {
        setNotice('Your session ended; sign in again.');
        client.setQueryData(queries.me.queryKey, null);
      }),
    [client],
  );
  // Signed out, nothing the last user saw may show for the next one.
  const signedOut = me.data === null;
  useEffect(() => {
    if (signedOut) client.removeQueries({ predicate: (q) => q.queryKey[0] !== queries.me.queryKey[0] });
  }, [signedOut, client]);

  if (me.isPending || (me.isError && me.isFetching)) return <Loading what="Tempered" />;
  if (me.isError)
    return (
      <main className="page">
        <ErrorBox error={me.error} retry={() => void me.refetch()} />
      </main>
    );
  if (me.data === null) {
    return (
      <LoginPage
        notice={notice}
        onSignedIn={(user) => {
          setNotice(undefined);
          setMe(user);
          if (window.location.pathname === '/login') navigate('/runs', { replace: true });
        }}
      />
    );
  }
  const signOut = async () => {
    await post('/api/logout').catch(() => {});
    setNotice(undefined);
    setMe(null);
  };
  return (
    <MeContext.Provider value={me.data}>
      <LiveProvider>
        <Header me={me.data} onSignOut={signOut} />
        <Routes />
      </LiveProvider>
    </MeContext.Provider>
  );
}

const NAV = [
  { to: '/runs', label: 'Runs' },
  { to: '/schedules', label: 'Schedules' },
  { to: '/approvals', label: 'Approvals' },
  { to: '/labeling', label: 'Labeling' },
  { to: '/models', label: 'Models' },
  { to: '/deployments', label: 'Deployments' },
  { to: '/playground', label: 'Playground' },
  { to: '/datasets', label: 'Datasets' },
];

function Header({ me, onSignOut }: { me: Me; onSignOut: () => void }) {
  const { pathname } = useLocation();
  const live = useLive();
  return (
    <header className="top">
      <a href="#main" className="skip">
        Skip to content
      </a>
      <Link to="/runs" className="brand" aria-label="Tempered home">
        <span className="logo" aria-hidden="true">
          T
        </span>
        <span className="brand-name">Tempered</span>
      </Link>
      <nav aria-label="Main">
        {NAV.map((n) => {
          const current = pathname === n.to || pathname.startsWith(`${n.to}/`);
          return (
            <Link key={n.to} to={n.to} aria-current={current ? 'page' : undefined} className="nav-link">
              {n.label}
              {n.to === '/approvals' && live.pending > 0 && (
                <span className="count" data-testid="pending-count" aria-label={`${live.pending} pending`}>
                  {live.pending}
                </span>
              )}
            </Link>
          );
        })}
      </nav>
      <div className="user">
        <span
          className={`live-dot ${live.state}`}
          title={live.state === 'open' ? 'Live updates on' : 'Live updates reconnecting…'}
          role="img"
          aria-label={live.state === 'open' ? 'live updates on' : 'live updates reconnecting'}
        />
        <span className="who" data-testid="who">
          <strong>{me.username}</strong> <span className="role">{me.role}</span>
        </span>
        <button type="button" className="link" onClick={onSignOut}>
          Sign out
        </button>
      </div>
    </header>
  );
}

const TITLES: Array<[RegExp, string]> = [
  [/^\/runs\/new$/, 'Start a run'],
  [/^\/runs\/./, 'Run'],
  [/^\/approvals/, 'Approvals'],
  [/^\/labeling/, 'Labeling'],
  [/^\/models/, 'Models'],
  [/^\/schedules/, 'Schedules'],
  [/^\/deployments/, 'Deployments'],
  [/^\/playground/, 'Playground'],
  [/^\/datasets/, 'Datasets'],
  [/^\//, 'Runs'],
];

function Routes() {
  const { pathname } = useLocation();
  useEffect(() => {
    const title = TITLES.find(([re]) => re.test(pathname))?.[1] ?? 'Tempered';
    document.title = `${title} · Tempered`;
  }, [pathname]);
  useEffect(() => {
    if (pathname === '/' || pathname === '/login') navigate('/runs', { replace: true });
  }, [pathname]);

  const seg = pathname.split('/').filter(Boolean).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  let page;
  if (seg.length === 0 || (seg[0] === 'runs' && seg.length === 1) || seg[0] === 'login') page = <RunsPage />;
  else if (seg[0] === 'runs' && seg[1] === 'new' && seg.length === 2) page = <StartRunPage />;
  else if (seg[0] === 'runs' && seg.length === 2) page = <RunPage key={seg[1]} id={seg[1]} />;
  else if (seg[0] === 'approvals' && seg.length === 1) page = <ApprovalsPage />;
  else if (seg[0] === 'labeling' && seg.length === 1) page = <LabelingQueuePage />;
  else if (seg[0] === 'labeling' && seg.length === 2) page = <LabelPage key={seg[1]} runId={seg[1]} />;
  else if (seg[0] === 'models' && seg.length === 1) page = <ModelsPage />;
  else if (seg[0] === 'schedules' && seg.length === 1) page = <SchedulesPage />;
  else if (seg[0] === 'deployments' && seg.length === 1) page = <DeploymentsPage />;
  else if (seg[0] === 'playground' && seg.length === 1) page = <PlaygroundPage />;
  else if (seg[0] === 'datasets' && seg.length === 1) page = <DatasetsPage />;
  else if (seg[0] === 'datasets' && seg.length === 2) page = <DatasetPage key={seg[1]} id={seg[1]} />;
  else
    page = (
      <main className="page">
        <h1>Not found</h1>
        <p>
          Nothing lives at <code>{pathname}</code>. <Link to="/runs">Go to the runs</Link>.
        </p>
      </main>
    );
  return <div id="main">{page}</div>;
}
