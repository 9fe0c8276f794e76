// A job's stored output (`deepdive/jobs/log`) in a read-only editor, refreshed while the job writes.
import { Disposable, Uri } from 'vscode';
import { Schemes } from '../common/constants';
import { DeepdiveServer } from '../common/server';
import { Requests } from '../protocol';
import { ReadOnlyDocuments } from '../report/documents';
import { JobsModel, renderJobLog } from './jobsModel';

const REFRESH_MS = 500;

export function jobLogUri(id: string, title: string): Uri {
    const name = title.replace(/[\\/:*?"<>|]+/g, '_') || id;
    return Uri.from({ scheme: Schemes.jobLog, path: `/${id}/${name}.log` });
}

export class JobLogs implements Disposable {
    private readonly pending = new Map<string, NodeJS.Timeout>();
    private readonly subscription: Disposable;

    constructor(
        private readonly server: DeepdiveServer,
        private readonly docs: ReadOnlyDocuments,
        private readonly model: JobsModel,
    ) {
        this.subscription = server.onJobEvent((event) => {
            if ((event.type === 'output' || event.type === 'finished') && this.isOpen(event.jobId)) {
                this.scheduleRefresh(event.jobId);
            }
        });
    }

    async show(id: string): Promise<void> {
        await this.docs.show(this.uri(id), await this.render(id));
    }

    private async render(id: string): Promise<string> {
        const log = await this.server.request(Requests.jobsLog, { id });
        return renderJobLog(this.model.get(id), log.lines, log.truncated);
    }

    private uri(id: string): Uri {
        return jobLogUri(id, this.model.get(id)?.title ?? id);
    }

    private isOpen(id: string): boolean {
        return this.docs.isOpen(this.uri(id));
    }

    private scheduleRefresh(id: string): void {
        if (this.pending.has(id)) {
            return;
        }
        this.pending.set(id, setTimeout(() => {
            this.pending.delete(id);
            this.render(id).then((text) => this.docs.set(this.uri(id), text), () => undefined);
        }, REFRESH_MS));
    }

    dispose(): void {
        this.pending.forEach((t) => clearTimeout(t));
        this.subscription.dispose();
    }
}
