/** The help texts: `tempered --help`, `tempered schedules --help` and `tempered schedules SUBCOMMAND --help`, `tempered users|tokens --help`. */

export const HELP = `tempered: run and steer model life cycles

Usage: tempered <command> [options]

Commands:
  run SPEC.yaml [--follow]        start a run of a pipeline spec; --follow shows its progress live
  runs                            list runs, newest first
  show RUN                        a run's stages, metrics, artifacts, approvals and deployment
  follow RUN | status RUN         show a run's progress live until it waits at the gate or ends
  logs RUN [--follow]             the run's log (trainer output, canary decisions); --follow streams it
  answers RUN [--suite NAME] [--filter all|wrong|newly-wrong|judge-disagreed|unsafe]
                                  what the model answered each held-out record (or, with --suite, each of
                                  that suite's prompts), beside the reference, the serving model's answer
                                  and the judge's verdicts and what the judge said; newly-wrong:
                                  right by the serving model, wrong here; judge-disagreed: the two orders (or the
                                  reference) disagree; unsafe: still unsafe after the gateway's output filter
  models                          model versions, their metrics and which one serves
  base-models                     the base-model catalog (model.base: {name} in a spec) and the versions
                                  fine-tuned from each
  eval VERSION [--suite NAME]…    run a model version's test suites (its run's test.suites) again and
                                  print each figure with its 95% interval; exit code 2 when a figure
                                  crosses a suite's min/max. For drift on a clock: schedules create
                                  ID SPEC.yaml --mode eval --every 1d (the spec's suites, the serving version)
  evaluations [VERSION]           recent evaluations (of one version), drift schedules' included
  deployments                     what serves each model, its traffic share, live canary state
  deployments promote RUN | abort RUN [--comment TEXT]
                                  end a running canary by hand (an approver): all traffic to the new
                                  version, or back to the previous one
  deployments rollback NAME [--to VERSION] --reason TEXT
                                  send all of a model's traffic back to an earlier version (an approver;
                                  default: the one deployed before the serving one), starting its server
  approve RUN [--comment TEXT] [--override]
                                  approve the deployment gate (as an approver who neither started the run
                                  nor created the schedule or trigger that started it);
                                  --override deploys a challenger that lost to the serving model
  reject RUN [--comment TEXT]     reject it: the run ends undeployed
  schedules SUBCOMMAND            pipelines on a clock and triggered retrains: create, list, show, pause,
                                  resume, trigger, backfill, delete (tempered schedules --help)
  users SUBCOMMAND                people (admin): list, create, role, disable, enable, unlock, password
                                  (tempered users --help)
  tokens SUBCOMMAND               API tokens: list, create (with an expiry), revoke (tempered tokens --help)

Options:
  --user NAME    act as this user of the local stack (operator, approver, admin; from credentials.json
                 in the data directory). TEMPERED_API_TOKEN overrides it.
  --json         machine-readable output
  --help         this text

Environment: TEMPERED_API_URL (default http://127.0.0.1:8080), TEMPERED_API_TOKEN, TEMPERED_DATA_DIR.

Examples:
  tempered run examples/demo/pipeline.yaml --follow
  tempered approve demo-reverse-m1abc-123456 --user approver --comment "metrics look right"
  tempered schedules create nightly examples/demo/pipeline.yaml --cron "0 3 * * *"`;

export const SCHEDULES_HELP: Record<string, string> = {
  '': `tempered schedules: pipelines on a clock (Temporal Schedules), and retrains triggered by new data or feedback

Usage: tempered schedules <subcommand> [options]      (tempered schedules <subcommand> --help for each)

Subcommands:
  create ID SPEC.yaml [--cron EXPR | --every INTERVAL] [--mode run|trigger|eval] [--overlap POLICY] [--paused]
  list                        every schedule: timing, paused or not, next action
  show ID                     one schedule: next times, recent actions, paused note, trigger state
  pause ID                    take no action until resumed
  resume ID                   take actions again (missed times are not taken: backfill them)
  trigger ID                  take one action now, paused or not
  backfill ID --from ISO --to ISO [--overlap POLICY]
                              take now the actions of a past window
  delete ID                   delete it (runs it started go on)

Every change takes --comment TEXT, recorded in the audit log with who did it. Managing schedules needs an
operator or admin (--user, default operator); anyone may list and show. --json prints what the API returns.`,
  create: `Usage: tempered schedules create ID SPEC.yaml [options]

Creates schedule ID for the pipeline in SPEC.yaml (validated now; every action uses this spec as it is now).
ID: lower-case letters, digits and dashes.

  --cron EXPR         when, as cron in UTC: "0 3 * * *" (03:00 every day), "@hourly", "*/15 * * * *"
  --every INTERVAL    or every INTERVAL: 30s, 15m, 6h, 1d
                      (neither: the spec's retrain.schedule in run mode, retrain.checkEvery in trigger mode)
  --mode run          every action starts a run, requested by schedule:ID
  --mode trigger      every action checks the spec's retrain.watch (new objects under an S3 prefix) and
                      retrain.feedback (new ratings and preferences) and starts a run, requested by
                      trigger:ID, only when a threshold passes (default when the spec has either)
  --mode eval         every action runs the spec's test.suites on the version serving its name (drift),
                      requested by eval-schedule:ID; tempered evaluations lists the results
  --overlap POLICY    when a time comes while the previous run is still going: SKIP (default), BUFFER_ONE,
                      BUFFER_ALL, CANCEL_OTHER, TERMINATE_OTHER, ALLOW_ALL
  --paused            create it paused
  --comment TEXT      why (audit log)

Example:
  tempered schedules create nightly examples/demo/pipeline.yaml --cron "0 3 * * *" --comment "nightly retrain"`,
  list: `Usage: tempered schedules list [--json]

Every schedule with its pipeline, mode, timing, paused state and next action time.`,
  show: `Usage: tempered schedules show ID [--json]

One schedule: timing and overlap policy, paused state and its note, the next action times, recent actions
(the runs or checks they started), actions taken and skipped, and for a trigger what it last checked.`,
  pause: `Usage: tempered schedules pause ID [--comment TEXT]

Pauses the schedule: it takes no action (a manual trigger still does) until resumed.`,
  resume: `Usage: tempered schedules resume ID [--comment TEXT]

Resumes a paused schedule. Times missed while paused are not taken; backfill them if they should be.`,
  trigger: `Usage: tempered schedules trigger ID [--comment TEXT] [--overlap POLICY]

Takes one action now, paused or not: a run (run mode), a check (trigger mode) or an evaluation (eval mode). By default it starts even
while another is running (--overlap ALLOW_ALL).`,
  backfill: `Usage: tempered schedules backfill ID --from ISO --to ISO [--overlap POLICY] [--comment TEXT]

Takes now every action the schedule would have taken between --from and --to (ISO 8601, e.g.
2030-01-01T00:00:00Z). By default all of them start at once (--overlap ALLOW_ALL; SKIP would start only the
first while it runs, BUFFER_ALL one after another).`,
  delete: `Usage: tempered schedules delete ID [--comment TEXT]

Deletes the schedule. Runs it started go on; a trigger forgets what it last saw.`,
};

export const USERS_HELP = `tempered users: the people of this Tempered (an admin; one's own password anyone)

Usage: tempered users <subcommand> [--user NAME] [--comment TEXT] [--json]

Subcommands:
  list                    users, their roles, whether disabled
  create NAME ROLE        a new user (viewer, operator, approver, admin); reads the password from stdin
  role NAME ROLE          change their role
  disable NAME            they can no longer sign in, and every token of theirs stops working at once
  enable NAME             undo disable
  unlock NAME             clear their sign-in lockout (five wrong passwords from one client lock it 5 minutes)
  password NAME           set their password from stdin (two lines when it is your own: current, then new);
                          revokes their dashboard sessions

Acts as admin of the local stack by default (--user). Passwords are read from stdin, never the command line
(which every local user can read): printf '%s\\n' "$PW" | tempered users create alice operator`;

export const TOKENS_HELP = `tempered tokens: API tokens, for scripts and the CLI

Usage: tempered tokens <subcommand> [--user NAME] [--json]

Subcommands:
  list [--for USER]       your live tokens and sessions (an admin: anyone's, with --for)
  create NAME [--days N]  a new token for you, shown once; expires in N days (default 90, at most 365;
                          30 when made from a dashboard session)
  revoke ID               revoke one of yours (an admin: anyone's); it stops working at once

Acts as operator of the local stack by default (--user).`;
