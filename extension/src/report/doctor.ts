// The last environment report, fetched through `deepdive/doctor`; views and the report share it.
import { Disposable, EventEmitter } from 'vscode';
import { DoctorReport, Requests } from '../protocol';
import { DeepdiveServer } from '../common/server';

export class DoctorReports implements Disposable {
    private last: DoctorReport | undefined;
    private readonly emitter = new EventEmitter<DoctorReport>();
    readonly onDidChange = this.emitter.event;

    constructor(private readonly server: DeepdiveServer) {}

    get lastReport(): DoctorReport | undefined {
        return this.last;
    }

    /** `refresh` makes the daemon probe torch and the GPUs again instead of answering from its cache. */
    async fetch(refresh: boolean): Promise<DoctorReport> {
        const report = await this.server.request(Requests.doctor, { refresh });
        this.last = report;
        this.emitter.fire(report);
        return report;
    }

    dispose(): void {
        this.emitter.dispose();
    }
}
