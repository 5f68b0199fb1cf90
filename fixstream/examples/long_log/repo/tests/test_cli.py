from ledger.cli import main


def test_summary_command(tmp_path, capsys):
    path = tmp_path / "export.csv"
    path.write_text("date,description,category,amount\n2024-05-02,Rent,Housing,-1150.00\n")
    assert main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 transactions" in out
    assert "housing" in out and "1150.00" in out
