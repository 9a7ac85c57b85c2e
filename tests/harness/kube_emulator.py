#!/usr/bin/env python3
"""A Kubernetes API emulator on 127.0.0.1 over real HTTP, for prescale's tests (kube-rs client).

usage: .venv/bin/python tests/harness/kube_emulator.py [PORT] [--no-deployment-sync] [--quiet]

PORT 0 (the default) picks a free port. Prints "READY http://127.0.0.1:PORT" on stdout once listening;
logs one line per request on stderr. SIGTERM/SIGINT stop it.

Built on kmock 0.8 (PyPI), an in-memory object store with list/watch over HTTP, with these changes so that
kube-rs (Api, watcher/Controller, Recorder, kube-lease-manager) sees an API server that behaves like a real one
in the ways the controller depends on:

  * metadata: resourceVersion (one global counter), uid, creationTimestamp, generation=1 on create;
    namespace filled from the URL; generateName; apiVersion/kind filled in.
  * writes (PATCH: merge, strategic-merge (treated as merge), JSON patch, apply (treated as merge); PUT) are
    computed here as old -> new object, then:
      - `/status` changes only `.status`; the main resource never changes `.status` (status subresource rules);
        create drops `.status` for resources with a status subresource;
      - `metadata.generation` +1 when anything outside metadata/status changed;
      - a write that changes nothing is a no-op: same resourceVersion, no watch event (as on a real server,
        so a controller's idempotent status patch does not retrigger its own watch);
      - a `metadata.resourceVersion` in the body is a precondition: 409 Conflict when stale;
      - PUT (replace) is supported.
  * `deployments/NAME/scale`: an autoscaling/v1 Scale view for GET, PATCH and PUT.
  * a minimal "deployment controller": every Deployment write sets status.{replicas, updatedReplicas,
    readyReplicas, availableReplicas} = spec.replicas and status.observedGeneration = generation, as if pods became
    ready at once (disable with --no-deployment-sync).
  * list: a real resourceVersion and kind; list and watch honour labelSelector (=, ==, !=, in, notin, exists,
    !exists) and fieldSelector (metadata.name, metadata.namespace); watch with a numeric resourceVersion skips
    the initial ADDED events of objects not newer than it.
  * error bodies are `Status` objects with the API server's reasons (NotFound, AlreadyExists, Conflict, Invalid).

Still missing (know this when a test passes here): no admission, no CRD schema/CEL validation, no defaulting, no
server-side-apply field ownership (apply never conflicts; fields are never removed by omission), strategic merge
= JSON merge (lists replaced whole), no 410 Gone / bookmarks / watch timeouts, no finalizer-driven GC of
dependents, no RBAC, no pods.
"""
import argparse
import asyncio
import copy
import datetime
import json
import os
import random
import re
import signal
import string
import sys
import uuid

import attrs
import jsonpatch
import kmock

VERBS = {'get', 'list', 'watch', 'create', 'update', 'patch', 'delete'}
RESOURCES = {
    'apps/v1/deployments': kmock.ResourceInfo(
        kind='Deployment', singular='deployment', namespaced=True, shortnames={'deploy'},
        subresources={'status', 'scale'}, verbs=VERBS),
    'prescale.dev/v1alpha1/predictivescalers': kmock.ResourceInfo(
        kind='PredictiveScaler', singular='predictivescaler', namespaced=True, shortnames={'psc'},
        subresources={'status'}, verbs=VERBS),
    'coordination.k8s.io/v1/leases': kmock.ResourceInfo(
        kind='Lease', singular='lease', namespaced=True, verbs=VERBS),
    'events.k8s.io/v1/events': kmock.ResourceInfo(
        kind='Event', singular='event', namespaced=True, shortnames={'ev'}, verbs=VERBS),
    'v1/events': kmock.ResourceInfo(
        kind='Event', singular='event', namespaced=True, shortnames={'ev'}, verbs=VERBS),
}
DEPLOYMENTS = kmock.resource('apps', 'v1', 'deployments')


def log(msg: str) -> None:
    if not QUIET:
        print(msg, file=sys.stderr, flush=True)


QUIET = False
FAULTS_FILE = None
_faults = {'mtime': None, 'rules': []}


def take_fault(method: str, path: str):
    """The first rule of the faults file (re-read when it changes) that matches this request and
    has uses left: {"method": "PATCH", "path_contains": "/scale", "status": 409, "reason":
    "Conflict", "count": 2, "delay_s": 0}. A rule with a delay and no status only slows the
    request down; count -1 never runs out."""
    if not FAULTS_FILE or not os.path.exists(FAULTS_FILE):
        return None
    mtime = os.path.getmtime(FAULTS_FILE)
    if mtime != _faults['mtime']:
        with open(FAULTS_FILE) as f:
            _faults['rules'] = json.load(f)
        _faults['mtime'] = mtime
    for rule in _faults['rules']:
        if rule.get('count', 1) == 0:
            continue
        if rule.get('method', method) != method or rule.get('path_contains', '') not in path:
            continue
        if rule.get('count', 1) > 0:
            rule['count'] = rule.get('count', 1) - 1
        rule['hits'] = rule.get('hits', 0) + 1
        return rule
    return None


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def api_error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message)


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (null deletes, objects merge, everything else replaces)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def scale_view(obj: dict) -> dict:
    md = obj.get('metadata', {})
    sel = obj.get('spec', {}).get('selector', {}).get('matchLabels', {})
    return {
        'apiVersion': 'autoscaling/v1', 'kind': 'Scale',
        'metadata': {k: md[k] for k in ('name', 'namespace', 'resourceVersion', 'uid', 'creationTimestamp')
                     if k in md},
        'spec': {'replicas': obj.get('spec', {}).get('replicas', 1)},
        'status': {'replicas': obj.get('status', {}).get('replicas', 0),
                   'selector': ','.join(f'{k}={v}' for k, v in sel.items())},
    }


# --- selectors ------------------------------------------------------------------------------------------
_LABEL_REQ = re.compile(r'\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*')


def parse_label_selector(text: str):
    """-> list of predicates over a labels dict. Raises ValueError on syntax errors."""
    preds = []
    pos = 0
    while pos < len(text):
        m = _LABEL_REQ.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f'invalid labelSelector {text!r} at {pos}')
        neg, key, op, val, setop, values = m.groups()
        if op in ('=', '=='):
            preds.append(lambda ls, k=key, v=val: ls.get(k) == v)
        elif op == '!=':
            preds.append(lambda ls, k=key, v=val: ls.get(k) != v)
        elif setop == 'in':
            vs = {v.strip() for v in values.split(',')}
            preds.append(lambda ls, k=key, vs=vs: ls.get(k) in vs)
        elif setop == 'notin':
            vs = {v.strip() for v in values.split(',')}
            preds.append(lambda ls, k=key, vs=vs: ls.get(k) not in vs)
        elif neg:
            preds.append(lambda ls, k=key: k not in ls)
        else:
            preds.append(lambda ls, k=key: k in ls)
        pos = m.end()
        if pos < len(text):
            if text[pos] != ',':
                raise ValueError(f'invalid labelSelector {text!r} at {pos}')
            pos += 1
    return preds


def parse_field_selector(text: str):
    preds = []
    for req in filter(None, (r.strip() for r in text.split(','))):
        m = re.fullmatch(r'([A-Za-z.]+)\s*(==|=|!=)\s*(.*)', req)
        if not m or m.group(1) not in ('metadata.name', 'metadata.namespace'):
            raise ValueError(f'unsupported fieldSelector {req!r} (this emulator knows metadata.name, metadata.namespace)')
        field, op, val = m.groups()
        attr = field.split('.')[1]
        if op == '!=':
            preds.append(lambda md, a=attr, v=val: md.get(a) != v)
        else:
            preds.append(lambda md, a=attr, v=val: md.get(a) == v)
    return preds


def selector_of(request):
    try:
        lp = parse_label_selector(request.params.get('labelSelector', ''))
        fp = parse_field_selector(request.params.get('fieldSelector', ''))
    except ValueError as e:
        raise api_error(400, 'BadRequest', str(e))

    def selected(obj: dict) -> bool:
        md = obj.get('metadata', {}) if isinstance(obj, dict) else {}
        labels = md.get('labels') or {}
        return all(p(labels) for p in lp) and all(p(md) for p in fp)
    return selected


# --- the emulator -------------------------------------------------------------------------------------
@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    deployment_sync: bool = True
    rv: int = 0

    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def info(self, resource):
        # NB: kmock's `resources[key]` creates missing entries (defaultdict-like): test membership first.
        return self.resources[resource] if resource in self.resources else None

    async def _handle(self, request):
        if request.resource is None or request.resource.plural is None:
            return await super()._handle(request)
        body = ''
        if request.method in ('POST', 'PATCH', 'PUT'):
            body = ' ' + (request.text[:400] + ('…' if len(request.text) > 400 else ''))
        log(f'{request.method.value} {request.url.path_qs}{body}')
        fault = take_fault(request.method.value, request.url.path)
        if fault is not None:
            if fault.get('delay_s'):
                await asyncio.sleep(fault['delay_s'])
            if fault.get('status'):
                raise api_error(fault['status'], fault.get('reason', 'InternalError'),
                                fault.get('message', 'injected fault'))
        if self.info(request.resource) is None and request.action is not None:
            raise api_error(404, 'NotFound', f'the server could not find the requested resource {request.resource}')
        if request.action == kmock.action.CREATE:
            self._prepare_create(request)
        elif request.name is not None and (request.action == kmock.action.UPDATE or request.method == 'PUT'):
            async with self._lock:
                request = await self._write(request)
        elif request.method == 'PUT':
            raise api_error(405, 'MethodNotAllowed', 'PUT needs an object name')
        return await super()._handle(request)

    def _prepare_create(self, request) -> None:
        data = request.data
        if not isinstance(data, dict):
            raise api_error(400, 'BadRequest', 'the body of a create must be a JSON object')
        if request.subresource:
            raise api_error(405, 'MethodNotAllowed', f'create of subresource {request.subresource!r} is not supported')
        info = self.info(request.resource)
        md = data.setdefault('metadata', {})
        if not md.get('name'):
            if md.get('generateName'):
                md['name'] = md['generateName'] + ''.join(random.choices(string.ascii_lowercase + string.digits, k=5))
            else:
                raise api_error(422, 'Invalid', 'metadata.name: Required value: name or generateName is required')
        if info.namespaced:
            if request.namespace is None:
                raise api_error(400, 'BadRequest', 'a namespaced resource must be created in a namespace URL')
            if md.get('namespace', request.namespace) != request.namespace:
                raise api_error(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
            md['namespace'] = request.namespace
        res = request.resource
        data.setdefault('apiVersion', f'{res.group}/{res.version}' if res.group else res.version)
        data.setdefault('kind', info.kind)
        md['resourceVersion'] = self.next_rv()
        md.setdefault('uid', str(uuid.uuid4()))
        md['creationTimestamp'] = now_rfc3339()
        md['generation'] = 1
        if 'status' in info.subresources:
            data.pop('status', None)
        if res == DEPLOYMENTS and self.deployment_sync:
            self._sync_deployment(data)

    async def _write(self, request):
        """PATCH/PUT of an object or its status/scale: compute old -> new here, store it, emit MODIFIED, and let
        kmock answer as for a GET of the same URL (the object, or the Scale view)."""
        res, sub = request.resource, request.subresource
        info = self.info(res)
        key = (res, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            raise api_error(404, 'NotFound', f'{res.plural} "{request.name}" not found')
        if sub not in (None, *info.subresources):
            raise api_error(404, 'NotFound', f'{res.plural}/{sub}: no such subresource')
        old = copy.deepcopy(self.objects[key].raw)
        old_rv = old.get('metadata', {}).get('resourceVersion')

        base = scale_view(old) if sub == 'scale' else old
        data = request.data
        ctype = request.headers.get('Content-Type', '').split(';')[0].strip()
        if data is None and ctype == 'application/apply-patch+yaml':
            import yaml  # kube-rs sends JSON, which is YAML too; real YAML only from other clients
            data = yaml.safe_load(request.text)
        if request.method == 'PUT':
            if not isinstance(data, dict):
                raise api_error(400, 'BadRequest', 'the body of a PUT must be a JSON object')
            wanted = data
        elif isinstance(data, list):
            try:
                wanted = jsonpatch.apply_patch(copy.deepcopy(base), data)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise api_error(422, 'Invalid', f'the JSON patch could not be applied: {e}')
        elif isinstance(data, dict):
            wanted = merge_patch(base, data)
        else:
            raise api_error(415, 'UnsupportedMediaType', f'cannot read a patch of type {ctype!r}')
        body_rv = data.get('metadata', {}).get('resourceVersion') if isinstance(data, dict) else None
        if body_rv and body_rv != old_rv:
            raise api_error(409, 'Conflict', f'Operation cannot be fulfilled on {res.plural} "{request.name}": '
                                             'the object has been modified; please apply your changes to the latest '
                                             'version and try again')

        if sub == 'scale':
            replicas = (wanted.get('spec') or {}).get('replicas')
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise api_error(422, 'Invalid', f'spec.replicas: Invalid value: {replicas!r}: must be an integer >= 0')
            new = copy.deepcopy(old)
            new.setdefault('spec', {})['replicas'] = replicas
        elif sub == 'status':
            new = copy.deepcopy(old)
            if 'status' in wanted:
                new['status'] = wanted['status']
            else:
                new.pop('status', None)
        else:
            new = copy.deepcopy(wanted)
            if 'status' in info.subresources:
                if 'status' in old:
                    new['status'] = old['status']
                else:
                    new.pop('status', None)
        # What the server owns: identity and bookkeeping.
        md = new.setdefault('metadata', {})
        for k in ('name', 'namespace', 'uid', 'creationTimestamp', 'generation', 'resourceVersion'):
            if k in old.get('metadata', {}):
                md[k] = old['metadata'][k]
            else:
                md.pop(k, None)
        new['apiVersion'], new['kind'] = old.get('apiVersion'), old.get('kind')
        if sub != 'status' and {k: v for k, v in new.items() if k not in ('metadata', 'status')} != \
                {k: v for k, v in old.items() if k not in ('metadata', 'status')}:
            md['generation'] = md.get('generation', 0) + 1
        if res == DEPLOYMENTS and self.deployment_sync and sub != 'status':
            self._sync_deployment(new)

        if new != old:
            md['resourceVersion'] = self.next_rv()
            self.objects[key].create(new)  # a new version in the object's history
            await self._buses[res].put({'type': 'MODIFIED', 'object': copy.deepcopy(new)})
        # Answer like a GET of the same URL. kmock matches its reactions against the *recorded* requests (by
        # identity), so the rewritten request must be recorded too.
        fetch = attrs.evolve(request, method='GET', action=kmock.action.FETCH, data=None)
        self._requests.append(fetch)
        return fetch

    @staticmethod
    def _sync_deployment(obj: dict) -> None:
        replicas = obj.get('spec', {}).get('replicas', 1)
        status = obj.setdefault('status', {})
        status.update(replicas=replicas, updatedReplicas=replicas, readyReplicas=replicas,
                      availableReplicas=replicas, observedGeneration=obj['metadata'].get('generation', 1))

    async def _serve_list(self, request):
        selected = selector_of(request)
        result = await super()._serve_list(request)
        res = request.resource
        info = self.info(res)
        return {
            'apiVersion': f'{res.group}/{res.version}' if res.group else res.version,
            'kind': f'{info.kind}List' if info and info.kind else 'List',
            'metadata': {'resourceVersion': str(self.rv)},
            'items': [obj for obj in result['items'] if selected(obj)],
        }

    async def _serve_watch(self, request):
        selected = selector_of(request)
        since = request.params.get('resourceVersion', '')
        since = int(since) if since.isdigit() else 0
        async for event in super()._serve_watch(request):
            if isinstance(event, dict):
                obj = event.get('object', {})
                if not selected(obj):
                    continue
                if event.get('type') == 'ADDED' and since:
                    rv = obj.get('metadata', {}).get('resourceVersion', '')
                    if rv.isdigit() and int(rv) <= since:
                        continue
            yield event

    async def _render_error(self, exc):
        # Reasons as the real API server spells them (kube-rs and kube-lease-manager compare them).
        status, reason, message = 500, 'InternalError', repr(exc)
        if isinstance(exc, kmock.KubernetesError):
            status, message = exc.status, exc.message or repr(exc)
            reason = {404: 'NotFound', 409: 'AlreadyExists'}.get(status, exc.reason) \
                if type(exc) is not kmock.KubernetesError else exc.reason
        log(f'  -> {status} {reason}: {message}')
        import aiohttp.web
        return aiohttp.web.json_response({
            'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Failure',
            'message': message, 'reason': reason, 'code': status,
        }, status=status)


def answer_scale(emu: Emulator, request):
    key = (request.resource, request.namespace, request.name)
    if key not in emu.objects or emu.objects[key].deleted:
        raise api_error(404, 'NotFound', f'deployments.apps "{request.name}" not found')
    return scale_view(emu.objects[key].raw)


async def main(port: int, deployment_sync: bool) -> None:
    emu = Emulator(deployment_sync=deployment_sync, strict=False)
    for name, info in RESOURCES.items():
        emu.resources[name] = info
    emu[DEPLOYMENTS, kmock.subresource('scale')] << (lambda req: answer_scale(emu, req))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    async with emu, kmock.Server(emu, host='127.0.0.1', port=port) as srv:
        print(f'READY http://127.0.0.1:{srv.port}', flush=True)
        await stop.wait()


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('port', nargs='?', type=int, default=0)
    ap.add_argument('--no-deployment-sync', action='store_true')
    ap.add_argument('--quiet', action='store_true', help='no per-request log on stderr')
    ap.add_argument('--faults', help='a JSON file of injected faults, re-read when it changes (see take_fault)')
    args = ap.parse_args()
    QUIET = args.quiet
    FAULTS_FILE = args.faults
    asyncio.run(main(args.port, not args.no_deployment_sync))
